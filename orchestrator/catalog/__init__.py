"""The catalog as the search path sees it: one interface (store.py), served from memory (memory.py) or Milvus."""
