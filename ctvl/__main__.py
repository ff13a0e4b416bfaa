from ctvl.cli import run

run()
