"""What happens after the 202, the same in both executor modes: the planner judges stored events, dispatch hands
runs to arq or to the embedded executor, `settle` follows each run up, and `sweep` finds what was left behind."""
