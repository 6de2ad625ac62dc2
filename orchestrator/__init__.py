"""shoprank's serving path: catalog, indexes, the Triton client and the gRPC ranking service.

Nothing under this package imports torch; model export and training live in `export` and `training`.
"""
