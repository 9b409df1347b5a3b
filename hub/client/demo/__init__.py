"""``spime demo``: the whole story, from a design push to a delivered, rated print.

Modules: :mod:`processes` (children in their own process groups, always reaped),
:mod:`octoprint` and :mod:`node` (the makerspace, through command lines only),
:mod:`story` (the chapters) and :mod:`summary` (the ``--json`` document, pure).
"""
