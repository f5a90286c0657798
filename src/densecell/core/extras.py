"""The optional parts of densecell and the pip extra that installs each: the core builds models, counts their costs
and trains them; searching, exporting, reporting and the rest need more. A missing extra is one line that names the
``pip install`` to run."""

from __future__ import annotations

from .errors import MissingExtra

__all__ = ["EXTRAS", "missing_extra"]

EXTRAS: dict[str, str] = {
    "search": "the architecture search (optuna, SQLAlchemy, scikit-learn)",
    "postgres": "a search study on PostgreSQL (psycopg)",
    "export": "ONNX export (onnx, onnxscript, onnxruntime)",
    "report": "search reports and plots (matplotlib, markdown)",
    "tensorboard": "TensorBoard logs of training (tensorboard)",
}
"""Each extra of ``pip install "densecell[EXTRA]"`` (``all`` installs every one) and what it is for."""


def missing_extra(error: ImportError, extra: str) -> MissingExtra:
    """The one-line error for ``error`` (a failed import of an optional module), naming the extra that brings it."""
    module = (error.name or str(error)).split(".")[0]
    return MissingExtra(f"{EXTRAS[extra]} needs {module}, which is not installed: pip install "
                        f"\"densecell[{extra}]\"")
