"""The science, as pure functions and torch modules (imaging, pathology, response, change
points). Nothing here imports Kafka, Faust, psycopg or Streamlit: the shells in ``streams/`` and
``monitoring_app/`` call it."""
