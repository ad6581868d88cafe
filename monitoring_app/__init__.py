"""The clinicians' Streamlit app and its read queries."""
