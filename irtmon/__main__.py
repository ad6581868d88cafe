from irtmon.cli import app

app(prog_name="irtmon")
