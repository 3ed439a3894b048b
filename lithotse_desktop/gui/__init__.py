"""The PySide6 desktop app: a thin shell that draws forms and runs core jobs off the GUI thread.

Nothing here decides anything about data: every action calls the same core functions the
CLI calls (workspace, plugins, jobs, raw index), so the two front ends cannot disagree.
"""
