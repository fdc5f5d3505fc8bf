from alpha_panda.cli.main import app

app()
