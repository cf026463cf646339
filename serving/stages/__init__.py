"""The ranking service's pipeline stages, one small module each (see serving/pipeline.py)."""
