# commands: step step step step step
class Res:
    def __del__(self):
        print("freed")


r = Res()  # @start
del r
print("end")
