"""The Streamlit script, alone in its folder: `streamlit run` puts the script's folder on sys.path,
where sibling modules such as recommend/profile.py would shadow the standard library."""
