import gc

# no collections while the command's modules load: they make objects that live to the end, which a
# collection would walk over and over (about 15 ms); ``run`` freezes them and collecting resumes
gc.disable()
from .cli import run  # noqa: E402

gc.enable()
run()
