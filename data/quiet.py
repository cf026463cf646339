"""Third-party warnings that Loupe's consoles do not show: one place, each filtered narrowly (the
module that warns, the category, and the message where that module warns of other things too).

Why they show at all: importing Feast runs `warnings.simplefilter("once", DeprecationWarning)` (and
the same for RuntimeWarning) for the whole process, so every library's deprecation notices print,
where Python shows them only for `__main__`. Each one below is about one library's use of another
(BentoML's of pydantic, MLflow's of SQLAlchemy, ibis' of DuckDB, circus' of tornado) or a feature Loupe uses on
purpose, and only an upgrade of that library changes it; Loupe's own code raises none of them (a
warning from Loupe's code is fixed, not filtered). Anything not listed here still shows.

Call `filter_third_party_warnings()` once the process has imported Feast (`make run`'s main, the
ranking service's module): filters added before Feast's import would sit behind its "once".
"""

from __future__ import annotations

import warnings


def filter_third_party_warnings() -> None:
    from pydantic.warnings import PydanticDeprecatedSince211
    from sqlalchemy.exc import SADeprecationWarning

    for category, module, message in (
        # BentoML's IO descriptors and request handler use pydantic APIs deprecated in pydantic 2.11
        # (`__get_pydantic_core_schema__` on BaseModel; `model_fields` on an instance): once per
        # worker at start and on the first request
        (PydanticDeprecatedSince211, r"_bentoml_sdk\.io_models", ""),
        (PydanticDeprecatedSince211, r"_bentoml_impl\.server\.app", ""),
        # MLflow's tracking store configures SQLAlchemy mappers with the deprecated `noload` strategy
        (SADeprecationWarning, r"mlflow\.store\.tracking\.sqlalchemy_store", ""),
        # circus (BentoML's process manager) stops its workers through tornado's deprecated
        # add_callback_from_signal
        (DeprecationWarning, r"tornado\.platform\.asyncio", "add_callback_from_signal is deprecated"),
        # ibis' DuckDB backend (Feast's offline store over the lake) calls DuckDB's deprecated
        # fetch_arrow_table()
        (DeprecationWarning, r"ibis\.backends\.duckdb", r"fetch_arrow_table\(\) is deprecated"),
        # Feast calls on-demand feature views experimental on every `feast apply`; the feature repo
        # defines them on purpose (features/feature_repo/)
        (RuntimeWarning, r"feast\.feature_store", "On demand feature view is an experimental feature"),
    ):
        warnings.filterwarnings("ignore", message=message, category=category, module=module)
