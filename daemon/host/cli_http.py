"""The operator CLI's calls to the daemon, each failure turned into one line
that says what happened and what to do (a ``CliError``), never a traceback.

"cannot reach" is said only when nothing answers on the port (refused, no
route, timed out while connecting); a refused login names the user and
where its password came from; TLS trouble says which certificate to trust.
"""
from __future__ import annotations

import ssl
from typing import TYPE_CHECKING

from .cli_target import CliError, Target

if TYPE_CHECKING:
    import requests

# requests is imported by the client, not with this module: `sensord serve`
# builds the same argument parser and has no use for it (~5 MB resident).

TIMEOUT = 30


class DaemonClient:
    def __init__(self, target: Target):
        self.target = target
        self.base = target.base
        import requests
        self.http = requests.Session()
        self.http.auth = (target.user, target.password)
        self.http.verify = target.verify
        self.http.trust_env = target.trust_env

    def request(self, method: str, path: str, **kwargs) -> requests.Response:
        """The daemon's answer to ``method path``. Refused credentials, roles and
        lockouts raise; other 4xx/5xx are returned for the caller to word."""
        import requests
        url = self.base + path
        try:
            response = self.http.request(method, url, timeout=TIMEOUT, **kwargs)
        except requests.exceptions.SSLError as err:
            raise CliError(self._tls_failure(err)) from None
        except requests.exceptions.ConnectTimeout:
            raise CliError(f"cannot reach the daemon at {self.base}: no answer to the connection "
                           f"within {TIMEOUT} s (is it running? is the address right?)") from None
        except requests.exceptions.ReadTimeout as err:
            if "handshake" in _reason(err):
                raise CliError(self._no_handshake(_reason(err))) from None
            raise CliError(f"the daemon at {self.base} took the request but did not answer within "
                           f"{TIMEOUT} s ({method} {path})") from None
        except requests.exceptions.ConnectionError as err:
            raise CliError(self._connection_failure(err)) from None
        except (requests.exceptions.InvalidURL, requests.exceptions.MissingSchema,
                requests.exceptions.InvalidSchema) as err:
            raise CliError(f"cannot use the URL {self.base}: {err}", code=2) from None
        except requests.RequestException as err:
            raise CliError(f"{method} {url} failed: {_reason(err)}") from None
        except OSError as err:      # e.g. a CA bundle path that cannot be read
            raise CliError(f"cannot call {self.base}: {err}") from None
        self._refused(response)
        return response

    def get_json(self, path: str, **kwargs):
        """GET ``path``: its JSON body, or a CliError naming the status and the daemon's message."""
        response = self.request("GET", path, **kwargs)
        if not response.ok:
            raise CliError(f"GET {path} failed ({response.status_code}): {message(response)}")
        return self.json(response)

    def json(self, response: requests.Response):
        try:
            return response.json()
        except ValueError:
            raise CliError(f"the answer of {self.base} is not sensord's (not JSON, "
                           f"{response.status_code}): is another program listening there?") from None

    def _refused(self, response: requests.Response) -> None:
        t = self.target
        if response.status_code == 401:
            raise CliError(f"wrong user or password: the daemon at {self.base} refused user {t.user!r} "
                           f"({t.user_from}) with the password from {t.password_from}; set SENSORD_USER "
                           f"and SENSORD_PASSWORD, or name the daemon's --config or --state-dir")
        if response.status_code == 403:
            raise CliError(f"user {t.user!r} may not do this (403): {message(response)}")
        if response.status_code == 429:
            wait = response.headers.get("Retry-After")
            raise CliError(f"user {t.user!r} is locked out after failed logins (429)"
                           + (f"; try again in {wait} s" if wait else "") + f": {message(response)}")

    def _tls_failure(self, err: Exception) -> str:
        reason = _reason(err)
        if "CERTIFICATE_VERIFY_FAILED" in reason or "certificate verify failed" in reason:
            trusted = (f"the certificate {self.target.verify}" if isinstance(self.target.verify, str)
                       else "the system's trusted certificates")
            return (f"the daemon at {self.base} presents a certificate this client does not trust "
                    f"({reason}; trusted: {trusted}): pass --cacert with the daemon's certificate (its "
                    f"[server] tls_cert, e.g. /etc/sensord/tls.crt), or name its --config instead of --url")
        if any(s in reason for s in ("WRONG_VERSION_NUMBER", "wrong version number", "UNEXPECTED_EOF",
                                     "EOF occurred")):
            return self._no_handshake(reason)
        return f"TLS with the daemon at {self.base} failed: {reason}"

    def _no_handshake(self, reason: str) -> str:
        # A plain HTTP daemon takes a TLS hello for a request that never ends its headers.
        return (f"no TLS handshake with the daemon at {self.base} ({reason}): does it serve HTTPS? If not, "
                f"use an http:// URL, or the --config it runs with")

    def _connection_failure(self, err: Exception) -> str:
        reason = _reason(err)
        nothing = ("Connection refused", "No route to host", "Network is unreachable",
                   "Name or service not known", "nodename nor servname", "Temporary failure in name resolution",
                   "Cannot assign requested address")
        if any(n in reason for n in nothing):
            return (f"cannot reach the daemon at {self.base}: {reason} (is it running? "
                    f"systemctl status sensord; or is this the right --config / --url?)")
        if "ssl" in reason.lower() or isinstance(_root(err), ssl.SSLError):
            return f"TLS with the daemon at {self.base} failed: {reason}"
        return (f"the connection to {self.base} broke without an answer: {reason} (if the daemon serves "
                f"HTTPS, use an https:// URL or the --config that names its certificate)")


def message(response: requests.Response) -> str:
    """The daemon's error message (its JSON body's ``message``), else the body's text."""
    try:
        return str(response.json()["message"])
    except (ValueError, KeyError, TypeError):
        text = " ".join(response.text.split())
        return text[:200] or response.reason or "no message"


def _root(err: BaseException) -> BaseException:
    """The innermost cause of a requests/urllib3 error."""
    seen, visited = err, set()
    while id(seen) not in visited:
        visited.add(id(seen))
        inner = seen.__cause__ or seen.__context__ or (seen.args[0] if seen.args and
                                                        isinstance(seen.args[0], BaseException) else None)
        if inner is None:
            break
        seen = inner
        reason = getattr(seen, "reason", None)
        if isinstance(reason, BaseException):
            seen = reason
    return seen


def _reason(err: BaseException) -> str:
    root = _root(err)
    if isinstance(root, OSError) and root.strerror:
        return root.strerror
    text = str(root) or type(root).__name__
    return " ".join(text.split())
