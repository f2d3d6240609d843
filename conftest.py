"""pytest configuration shared by the unit tests and the nbval run over notebooks/."""


def pytest_collectstart(collector):
    """nbval: never compare stderr (warnings, progress bars) or rich reprs that change by version."""
    if collector.fspath and collector.fspath.ext == ".ipynb":
        collector.skip_compare += ("stderr", "text/html", "application/javascript",
                                   "application/vnd.jupyter.widget-view+json")
