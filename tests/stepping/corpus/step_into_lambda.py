# commands: step step step
double = lambda x: x * 2
y = double(3)  # @start
print(y)
