"""The example customer-support assistant that evalgate's bundled suites test.

``assistant.bot:respond`` is the current release; ``assistant.bot_regressed:respond``
is the same assistant with a regression, to show what a failing gate looks like.
"""
