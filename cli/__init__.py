"""The `shoprank` command line: above serving, training and export, and imported by none of them."""
