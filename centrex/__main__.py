from centrex.cli import app

app()
