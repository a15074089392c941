"""Start-up and reload hardening: failures that used to be silent are logged, hostile
config files are rejected quickly with FILE:LINE:COLUMN, and a rejected reload leaves the
old config serving."""
import os

from daemon import wait_for


def test_unpinnable_steering_program_is_logged_and_steering_stays_on(sluice, backend):
    """bpf_program__pin's result was ignored: a pin that cannot be made (here a directory
    sits where the program's pin goes) is now one warning line; steering still runs."""
    b = backend("a")
    sl = sluice.new()
    sl.write_config(sluice.proxy_config(b, sl=sl, workers=2))
    os.makedirs(os.path.join(sl.pin_path, "steer_prog", "occupied"))
    sl.start()
    assert sl.wait_log(lambda ln: 'msg="steering on"' in ln), sl.stderr()
    line = sl.wait_log(lambda ln: 'msg="cannot pin the steering program"' in ln)
    assert line and "steer_prog" in line, sl.stderr()
    with sl.client() as c:
        assert c.request("GET", "/").status == 200
