"""Every public docstring of the package renders as reStructuredText the way the book's API page
renders it (napoleon's numpy style, then docutils): the strict book build (-W) refuses a page
with one broken docstring, and this finds it in a second instead of after the whole build."""
import importlib
import inspect
import io
import pkgutil

import docutils.core
import pytest
from sphinx.ext.napoleon import Config
from sphinx.ext.napoleon.docstring import NumpyDocstring

import dmbir_edu

CONFIG = Config(napoleon_numpy_docstring=True, napoleon_google_docstring=False, napoleon_use_param=False,
                napoleon_use_rtype=False)      # as _config.yml


def public_docstrings(module):
    objs = [(module.__name__, module)]
    for name, o in vars(module).items():
        mine = (inspect.isfunction(o) or inspect.isclass(o)) and o.__module__ == module.__name__
        if mine and not name.startswith("_"):
            objs.append((f"{module.__name__}.{name}", o))
            if inspect.isclass(o):
                objs += [(f"{module.__name__}.{name}.{n}", f) for n, f in vars(o).items()
                         if not n.startswith("_") and (inspect.isfunction(f) or isinstance(f, property))]
    for name, o in objs:
        doc = inspect.getdoc(o.fget if isinstance(o, property) else o)
        if doc:
            yield name, doc


MODULES = [m.name for m in pkgutil.iter_modules(dmbir_edu.__path__)]


@pytest.mark.parametrize("module", MODULES)
def test_public_docstrings_render_without_warnings(module):
    problems = []
    for name, doc in public_docstrings(importlib.import_module(f"dmbir_edu.{module}")):
        stream = io.StringIO()
        docutils.core.publish_doctree(str(NumpyDocstring(doc, CONFIG)),
                                      settings_overrides={"warning_stream": stream, "report_level": 2})
        lines = [m for m in stream.getvalue().splitlines()
                 if "(WARNING" in m or "(ERROR" in m if "Unknown interpreted text role" not in m]
        problems += [f"{name}: {m}" for m in lines]
    assert not problems, "\n".join(problems)
