"""Tests of the Streamlit app (apps/app.py): in-process with AppTest, and in a real browser."""
