"""Truncated-graph and interface rules (TG): what a graph lost on the way out of the exporter.

Cut graphs, stripped initializers and hand edits leave outputs nothing
produces and inputs nothing defines; tracing bakes paths into constants and
drops inputs whose branch was not taken.  No peer we measured reports an output
that no longer depends on the inputs or an input that the exporter dropped.
"""
