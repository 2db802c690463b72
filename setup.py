"""The top-level folders daemon/, drivers/ and filters/ install as one import
namespace, ``sensord``: sensord.daemon, sensord.drivers, sensord.filters.

pyproject.toml holds the metadata; this file only maps folders to package
names, which setuptools' declarative config cannot do with automatic
discovery. Every package under the three folders is found, never listed.
"""
from setuptools import find_namespace_packages, setup

FOLDERS = ("daemon", "drivers", "filters")

# Namespace discovery, so folders of data (the status page's static/) are
# packages too and their files travel as package data.
packages = [f"sensord.{name}" for name in find_namespace_packages(include=[f"{f}*" for f in FOLDERS],
                                                                   exclude=["*__pycache__*"])]
package_dir = {f"sensord.{folder}": folder for folder in FOLDERS}
# The documented default configuration travels with the code (`sensord config`).
packages.append("sensord.config")
package_dir["sensord.config"] = "config"

setup(
    packages=packages,
    package_dir=package_dir,
    package_data={
        "sensord.daemon.api.static": ["*"],
        "sensord.daemon.api.device_icons": ["*.png"],
        "sensord.config": ["*.toml"],
        "sensord.daemon": ["py.typed"],
        "sensord.drivers": ["py.typed", "*.md"],
        "sensord.filters": ["py.typed"],
    },
)
