"""Candidates domain (Dagster wiring; the domain code is candidate_gen/): the fan-out worker's daily
run, the rebuild from the lake, the Explore sources.

assets.py       candidates/rebuild, then daily fanout (with its check), trending, social, embeddings
jobs.py         candidates_job: the day's fan-out run and the Explore builders
resources.py    Redis, the candidate config, the candidates folder
definitions.py  the domain's Definitions (merged by pipelines/definitions.py)
"""
