"""Being written (issue 13)."""
import unittest


@unittest.skip("not written yet")
class Placeholder(unittest.TestCase):
    def test_nothing(self):
        pass
