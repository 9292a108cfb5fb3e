"""Export: one exporter and a writer per format (registered as kind ``export_format``: onnx, mediapipe), plus the
pieces tasks build their exported graphs on (graphs.py, tflite_metadata.py, tflite_convert.py), which sit below
the tasks and import nothing above them."""
