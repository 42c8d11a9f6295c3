"""Every conversion between protobuf messages and domain values: ``common`` for what all
services share, one module per service area (job, psi, logistic, scoring, keys, binning, debt).

Ciphertexts from a peer are validated here, on the way in (key fingerprint, scale, count).
"""
