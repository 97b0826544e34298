"""Deploy many: standalone models from one supernet (stock / pruned ESPnet models, ONNX,
int8), CPU latency measured and cached per machine."""
