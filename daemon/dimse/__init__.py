"""The clinic's DICOM network, through pynetdicom: associations with our AE
title and bounded waits (network), transfer syntaxes by name (syntaxes),
what DIMSE statuses mean (statuses), and the Storage Commitment request
and report datasets (storage_commitment). Used by the worklist and by the
forwarding room's C-STORE, storage commitment and MPPS."""
