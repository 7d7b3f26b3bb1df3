"""Nearline pipelines: ``nearline_events`` → prompts → embeddings → Milvus + Feast, each stage its own
process.

See docs/nearline.md for the design and the exactly-once argument. Nothing heavy is imported here.
"""
