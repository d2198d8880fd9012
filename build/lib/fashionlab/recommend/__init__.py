"""Recommendation features on a trained checkpoint and its evaluation directory: batch prediction,
similar items, style profiles, wardrobe counts, face-to-outfit and the Streamlit demo.

The `fashionlab` command (fashionlab.cli) and the app only parse input and call these modules.
"""
