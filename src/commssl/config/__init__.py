"""The LispWorks-shaped configuration functions: contexts, verification, credentials, keys,
options, revocation, sessions, features, certificates."""
