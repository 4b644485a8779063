"""Each <script> of a page once.

sphinx-thebe 0.3.1 adds its inline ``const THEBE_JS_URL = ...`` script (and sphinx-togglebutton its
``togglebuttonSelector`` one) every time Sphinx reads the sources, and a Jupyter Book 1 build reads
them twice, the second time with ``filename=""`` instead of ``None``: every page declared the
constant twice, a SyntaxError in the browser that the book's page check reports. Scripts with the
same source (or the same inline body) and attributes are kept once, in order.
"""


def unique_scripts(app, pagename, templatename, context, doctree):
    seen, kept = set(), []
    for js in context.get("script_files", []):
        key = (getattr(js, "filename", str(js)) or None, repr(sorted(getattr(js, "attributes", {}).items())))
        if key not in seen:
            seen.add(key)
            kept.append(js)
    context["script_files"] = kept


def setup(app):
    app.connect("html-page-context", unique_scripts, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
