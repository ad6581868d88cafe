"""One file per page of the monitoring app (run by st.navigation, not imported)."""
