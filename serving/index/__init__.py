"""Post vector index: Milvus (system of record, scale-out), the in-process FAISS HNSW replica (default serving
path) and exact torch search (GPU path), all behind :class:`serving.index.base.PostIndex`.

Nothing heavy is imported here: pull implementations from their modules.
"""
