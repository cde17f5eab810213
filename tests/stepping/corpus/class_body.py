# commands: step step step step step
class Config:  # @start
    size = 3
    name = "c"

    def area(self):
        return self.size ** 2


print(Config().area())
