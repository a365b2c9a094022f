from danlu.cli.dispatch import run

run()
