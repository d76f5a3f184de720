"""Fault injection for run tests, loaded by every Python process that has this folder on PYTHONPATH
(worker processes and Slurm jobs inherit it from the test's environment).

LMGAUGE_TEST_SLOW_APPEND=SECONDS   sleep after each journal line, so a test can kill mid-shard
LMGAUGE_TEST_SLOW_ONCE=PATH        only the first process to write a journal line is slowed
                                   (it writes its pid to PATH); later attempts run at full speed
"""

import os

if os.environ.get("LMGAUGE_TEST_SLOW_APPEND"):
    import time

    import lmgauge.runs.journal as journal

    _real_append = journal.JournalWriter.append
    _state = {"slow": None}

    def _slow() -> bool:
        if _state["slow"] is None:
            once = os.environ.get("LMGAUGE_TEST_SLOW_ONCE")
            if not once:
                _state["slow"] = True
            else:
                try:
                    fd = os.open(once, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
                    os.write(fd, str(os.getpid()).encode())  # the test kills this process
                    os.close(fd)
                    _state["slow"] = True
                except FileExistsError:
                    _state["slow"] = False
        return _state["slow"]

    def append(self, record):
        _real_append(self, record)
        if _slow():
            time.sleep(float(os.environ["LMGAUGE_TEST_SLOW_APPEND"]))

    journal.JournalWriter.append = append
