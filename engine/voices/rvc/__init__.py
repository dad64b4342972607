"""RVC (Retrieval-based Voice Conversion) v1/v2 voices.

* ``synthesizer``  SynthConfig, SynthesizerTrn (RVC's synthesizer, RVC's parameter names), .infer()
                   with partial decoding and injectable noise
* ``checkpoint``   read_checkpoint / load_synthesizer: safe, verified loading of RVC .pth inference
                   models; every other file gets one sentence saying what it is
* ``onnx_model``   load_onnx_synthesizer: RVC's and w-okada's ONNX contracts on onnxruntime
* ``export``       export_onnx / export_pth_to_onnx
* ``voice``        RVCVoice / load_rvc_voice: the streaming voice
* ``presets``      the named live settings (default, exact, small-cpu) and the suggestion rule
* ``versions``     v1/v2 -> feature size and encoder layer, sample-rate names: written once
* ``content``      content encoders (torch HuBERT, ONNX); ``hubert``: the model; ``hubert_weights``:
                   reading fairseq / Hugging Face checkpoints into it
* ``f0``, ``index``, ``assets``: pitch, retrieval, the files a voice needs

Heavy imports (torch, onnxruntime) happen in the submodules, not here.
"""
