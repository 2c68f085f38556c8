"""The Textual operator console (`grpo-tui`): the only place in the project that imports textual.

app.py (the App and the `grpo-tui` script), screens.py (help, start-auto form, guard editor),
widgets.py (the panels), source.py (snapshots from the scheduler and the home; a fixed source for
snapshots), alerts.py (alert rules), render.py (text helpers). It talks to the scheduler only through
`grpo_tui.control.ControlClient`, as a remote console would.
"""
