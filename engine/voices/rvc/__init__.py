"""RVC (Retrieval-based Voice Conversion) v1/v2 voices.

* ``synthesizer``  SynthConfig, SynthesizerTrn (RVC's synthesizer, RVC's parameter names), .infer()
                   with partial decoding and injectable noise
* ``checkpoint``   read_checkpoint / load_synthesizer: safe, verified loading of RVC .pth inference
                   models; every other file gets one sentence saying what it is
* ``onnx_model``   load_onnx_synthesizer: RVC's and w-okada's ONNX contracts on onnxruntime
* ``export``       export_onnx / export_pth_to_onnx
* ``voice``        RVCVoice / load_rvc_voice: the streaming voice
* ``content``, ``f0``, ``index``, ``assets``: the front end (content encoder, pitch, retrieval)

Heavy imports (torch, onnxruntime) happen in the submodules, not here.
"""
