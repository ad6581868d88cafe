# files/ holds the corpus's bad files and a link leading out to /etc: never collect there
collect_ignore = ["files"]
