"""The DSIO wire contract: ImageInfo, AcquisitionInfo, filter parameters,
timestamps and the state names (AcquisitionState, DeviceStatus), read
liberally (any key case, enums by name or number, explicit nulls) and
written strictly in the spec's form. No I/O, no Flask."""
