"""Test support a user's own components can use too: the toy world and the conformance suites that belong's own
components pass (event stores, models, sources, filters, scorers, selectors), as lkpy's ``testing`` does."""
