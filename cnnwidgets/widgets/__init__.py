"""The panels (ipywidgets + bqplot). They render; the maths lives in cnnwidgets.analyses."""
