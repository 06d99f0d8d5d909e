"""The warehouse access layer: the only place that speaks SQL to the warehouse (besides the quality runner's
Great Expectations views).

``core`` holds the engine and the two helpers every table family is written over: read a statement into a frame,
replace the rows of a key in one transaction. One module per table family sits on top of them.
"""
