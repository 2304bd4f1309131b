"""Print this process's pid and exit (a pid known to be dead afterwards)."""
import os

print(os.getpid())
