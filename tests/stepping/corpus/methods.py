# commands: step step step step step step step step
class Box:
    def __init__(self, v):
        self.v = v

    @property
    def twice(self):
        return self.v * 2

    def add(self, k):
        return self.v + k


b = Box(3)  # @start
print(b.twice, b.add(1))
