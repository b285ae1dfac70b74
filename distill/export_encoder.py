"""An encoder student written out whole: a plain Hugging Face BERT, its heads, its runtime.

The registry keeps only the heads and the tuned top layers (the frozen base comes from the
installed all-MiniLM-L6-v2 package). An export holds the whole encoder with the tuned layers
in place (`config.json`, `model.safetensors`, tokenizer: `AutoModel.from_pretrained` loads
it), the heads alone in `heads.safetensors`, `encoder.json` (frames and slot keys), and
`slimgate_encoder.py`: `distill/encoder_portable.py` unchanged, which answers with them.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

HEAD_PREFIXES = ("frame.", "start_proj.", "end_proj.", "start_query.", "end_query.")
RUNTIME = "slimgate_encoder.py"


def write_encoder(src: Path, dst: Path) -> None:
    """Write the encoder student in `src` (a registry version) into `dst`."""
    from safetensors.torch import save_file

    import distill.encoder_portable
    from distill.encoder_student import SPEC_FILE, EncoderStudent
    from distill.student import quiet_progress_bars

    student = EncoderStudent.load(src)  # checks the installed base is the one it trained on
    net = student.net
    with quiet_progress_bars():
        net.bert.save_pretrained(dst)
    student.tokenizer.save_pretrained(dst)
    heads = {k: v.detach().contiguous() for k, v in net.state_dict().items()
             if k.startswith(HEAD_PREFIXES)}
    save_file(heads, str(dst / "heads.safetensors"))
    spec = json.loads((src / SPEC_FILE).read_text(encoding="utf-8"))
    (dst / "encoder.json").write_text(json.dumps(spec, indent=1, ensure_ascii=False),
                                      encoding="utf-8")
    shutil.copy2(distill.encoder_portable.__file__, dst / RUNTIME)
