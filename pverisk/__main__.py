from pverisk.cli import app

app()
