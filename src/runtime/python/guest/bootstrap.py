"""Starts the Python guest (hearth_guest.py). Its code is imported rather than run as this script, so that
the bytecode the sandbox compiles beside it when the platform starts is used: Python compiles a script on
every start, ~6 ms of CPU for the guest's 1,100 lines, paid by every stem cell (issue 11).
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hearth_guest  # noqa: E402

del sys.path[0]
hearth_guest.main()
