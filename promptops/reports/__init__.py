"""Everything a person reads: rich tables (`tables`), the optimizer's live view (`optimize_view`) and
markdown reports (`markdown`). Domain objects return data; these modules word and draw it.

Only this package and the CLI import rich.
"""
