"""Fixtures shared by the validation tests."""
import pytest

from components import validate
from validation import context as gx_context


@pytest.fixture
def gx_runs(monkeypatch):
    """Every GX checkpoint run: (suite, files in the frame (when it names them), rows)."""
    runs = []
    original = gx_context.Suite.run

    def spy(self, df, file=None):
        files = tuple(sorted(df[validate.FILE].unique())) if validate.FILE in df.columns else (file,)
        runs.append((self.name, files, len(df)))
        return original(self, df, file=file)

    monkeypatch.setattr(gx_context.Suite, "run", spy)
    return runs
