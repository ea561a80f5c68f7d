"""Every sub-package here is one demo (one tab). See demohub/spec.py for the contract."""
